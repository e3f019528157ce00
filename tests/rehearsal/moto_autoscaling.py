"""Patches 19-21 of the rehearsal's moto adapter (tests/rehearsal/moto_adapter.py): the EC2 Auto
Scaling resources moto 5.2.5's CloudFormation skips, registered on moto's own autoscaling backend.

19. AWS::AutoScaling::ScalingPolicy (put_scaling_policy; Ref and GetAtt Arn: the policy ARN, as
    in AWS). moto's ExecutePolicy then applies it (ExactCapacity sets the desired capacity).
20. AWS::AutoScaling::LifecycleHook (create_lifecycle_hook; Ref: the hook's name).
21. AWS::AutoScaling::WarmPool (put_warm_pool on the group; Ref: the group's name).

What moto does not do with them: no instance ever waits in a lifecycle state, no warm-pool
instance is launched, stopped or started, and no alarm invokes a policy.
"""

from __future__ import annotations

from typing import Any

TYPES = (
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::AutoScaling::LifecycleHook",
    "AWS::AutoScaling::WarmPool",
)
_MODULE = "moto.cloudformation.rehearsal_adapter"  # moto keys models by its 2nd part


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def adapted_base() -> type:
    """The mixin every adapted resource type shares (here and in moto_adapter.apply): physical ID,
    no-op is_created, GetAtt by attributes(), update = delete + create. A mixin, not a
    CloudFormationModel subclass: moto lists models as CloudFormationModel's DIRECT subclasses."""
    from moto.cloudformation import parsing

    class _Adapted:
        """Shared plumbing: physical ID, no-op is_created, update = delete + create.

        A mixin: moto lists models as CloudFormationModel's DIRECT subclasses.
        """

        physical_id = ""

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @property
        def physical_resource_id(self) -> str:
            return self.physical_id

        def is_created(self) -> bool:
            return True

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in cls.attributes()

        @classmethod
        def attributes(cls) -> dict[str, str]:
            return {}

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            attributes = self.attributes()
            if attribute_name not in attributes:
                raise parsing.UnformattedGetAttTemplateException()
            return getattr(self, attributes[attribute_name])

        @classmethod
        def update_from_cloudformation_json(cls, original_resource, new_resource_name,
                                            cloudformation_json, account_id, region_name):
            original_resource.remove(account_id, region_name)
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json,
                                                       account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name):
            return None  # the instance's delete() below does the work

        def delete(self, account_id: str, region_name: str) -> None:
            self.remove(account_id, region_name)

        def remove(self, account_id: str, region_name: str) -> None:
            raise NotImplementedError

    return _Adapted


def models() -> tuple[type, ...]:
    """The three model classes; defining them registers them with moto (call once, in apply)."""
    from moto.autoscaling.models import autoscaling_backends
    from moto.core.common_models import CloudFormationModel

    class _Adapted(adapted_base()):
        group = ""
        name = ""

    class ScalingPolicy(_Adapted, CloudFormationModel):
        __module__ = _MODULE

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::AutoScaling::ScalingPolicy"

        @classmethod
        def attributes(cls):
            return {"Arn": "physical_id", "PolicyName": "name"}

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            policy = autoscaling_backends[account_id][region_name].put_scaling_policy(
                name=props.get("PolicyName", resource_name), policy_type=props.get(
                    "PolicyType", "SimpleScaling"),
                metric_aggregation_type=props.get("MetricAggregationType"),
                adjustment_type=props.get("AdjustmentType"),
                as_name=props["AutoScalingGroupName"],
                min_adjustment_magnitude=props.get("MinAdjustmentMagnitude"),
                scaling_adjustment=_int(props.get("ScalingAdjustment")),
                cooldown=_int(props.get("Cooldown")),
                target_tracking_config=props.get("TargetTrackingConfiguration") or {},
                step_adjustments=props.get("StepAdjustments", []),
                estimated_instance_warmup=props.get("EstimatedInstanceWarmup"),
                predictive_scaling_configuration=props.get("PredictiveScalingConfiguration"),
            )
            # moto's ExecutePolicy reads the step's adjustment as the policy's own.
            steps = props.get("StepAdjustments") or []
            if policy.scaling_adjustment is None and len(steps) == 1:
                policy.scaling_adjustment = int(steps[0]["ScalingAdjustment"])
            adapted = cls()
            adapted.physical_id, adapted.name = policy.arn, policy.name
            return adapted

        def remove(self, account_id, region_name):
            autoscaling_backends[account_id][region_name].delete_policy(self.name)

    class LifecycleHook(_Adapted, CloudFormationModel):
        __module__ = _MODULE

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::AutoScaling::LifecycleHook"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            name = props.get("LifecycleHookName", resource_name)
            autoscaling_backends[account_id][region_name].create_lifecycle_hook(
                name=name, as_name=props["AutoScalingGroupName"],
                transition=props["LifecycleTransition"],
                timeout=_int(props.get("HeartbeatTimeout")),
                result=props.get("DefaultResult", "ABANDON"))
            adapted = cls()
            adapted.physical_id, adapted.name = name, name
            adapted.group = props["AutoScalingGroupName"]
            return adapted

        def remove(self, account_id, region_name):
            autoscaling_backends[account_id][region_name].delete_lifecycle_hook(self.group,
                                                                                self.name)

    class WarmPool(_Adapted, CloudFormationModel):
        __module__ = _MODULE

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::AutoScaling::WarmPool"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            group = props["AutoScalingGroupName"]
            autoscaling_backends[account_id][region_name].put_warm_pool(
                group_name=group,
                max_group_prepared_capacity=_int(props.get("MaxGroupPreparedCapacity")),
                min_size=_int(props.get("MinSize")), pool_state=props.get("PoolState"),
                instance_reuse_policy=props.get("InstanceReusePolicy"))
            adapted = cls()
            adapted.physical_id = adapted.group = group
            return adapted

        def remove(self, account_id, region_name):
            backend = autoscaling_backends[account_id][region_name]
            if self.group in backend.autoscaling_groups:
                backend.delete_warm_pool(self.group)

    return ScalingPolicy, LifecycleHook, WarmPool
