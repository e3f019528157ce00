"""Service autoscaling: the scalable target, target tracking, schedules and scale-to-zero.

Part of the service layer (stacks/service.py declares the parameters named here and calls
add_autoscaling); its own module so the scaling rules read in one place.
"""

from __future__ import annotations

from troposphere import GetAtt, If, NoValue, Ref, Sub, applicationautoscaling, cloudwatch

from app.contract import IN_FLIGHT_REQUESTS, METRIC_NAMESPACE
from stacks import names

REQUESTS_PER_TARGET = "RequestsPerTargetPerMinute"
IN_FLIGHT_TARGET = "InFlightRequestsPerTask"
SCHEDULED_SCALING = "ScheduledScaling"
SCALE_DOWN_SCHEDULE = "ScaleDownSchedule"
SCALE_UP_SCHEDULE = "ScaleUpSchedule"
SCHEDULE_TIMEZONE = "ScheduleTimezone"
SCALE_TO_ZERO = "ScaleToZero"
IDLE_MINUTES = "IdleMinutes"

SCALE_OUT_COOLDOWN = 60  # seconds: add capacity fast
SCALE_IN_COOLDOWN = 900  # seconds: a model load is expensive; shed capacity slowly


def add_autoscaling(t, service, resource_label, gateway_dimensions) -> None:
    """The scalable target, its two target-tracking policies and, when on, scale-to-zero."""
    # With scale-to-zero on, the floor is 0 at every hour: scaling policies never go below
    # the scalable target's MinCapacity ("Scaling policies will never go higher or lower than
    # the minimum-maximum range",
    # https://docs.aws.amazon.com/autoscaling/application/userguide/getting-started.html), so
    # the idle policy below needs MinCapacity 0, and the morning action must not raise it.
    floor = If("ScaleToZeroOn", 0, Ref(names.SERVICE_MIN_TASKS))
    scale = lambda name, low, high, schedule: applicationautoscaling.ScheduledAction(  # noqa: E731
        ScheduledActionName=name, Schedule=Ref(schedule), Timezone=Ref(SCHEDULE_TIMEZONE),
        ScalableTargetAction=applicationautoscaling.ScalableTargetAction(
            MinCapacity=low, MaxCapacity=high))
    target = t.add_resource(applicationautoscaling.ScalableTarget(
        "ScalableTarget",
        ServiceNamespace="ecs",
        ScalableDimension="ecs:service:DesiredCount",
        ResourceId=Sub("service/${ClusterName}/${Name}", Name=GetAtt(service, "Name")),
        MinCapacity=floor,
        MaxCapacity=Ref(names.SERVICE_MAX_TASKS),
        # No RoleARN: Application Auto Scaling uses its ECS service-linked role.
        # At night MaxCapacity 0 caps every policy, the wake policy too: a request at night
        # gets the load balancer's 503 until the morning action (docs/infrastructure.md, Scale to zero).
        ScheduledActions=If("ScheduleOn", [
            scale("scale-to-zero", 0, 0, SCALE_DOWN_SCHEDULE),
            scale("scale-back-up", floor, Ref(names.SERVICE_MAX_TASKS), SCALE_UP_SCHEDULE),
        ], NoValue),
    ))

    def policy(title, value, metric, disable_scale_in):
        return t.add_resource(applicationautoscaling.ScalingPolicy(
            title,
            PolicyName=Sub(f"${{AWS::StackName}}-{title}"),
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=(
                applicationautoscaling.TargetTrackingScalingPolicyConfiguration(
                    TargetValue=Ref(value),
                    ScaleOutCooldown=SCALE_OUT_COOLDOWN,
                    ScaleInCooldown=SCALE_IN_COOLDOWN,
                    DisableScaleIn=disable_scale_in,
                    **metric)),
        ))

    # Target tracking "does not perform scaling when the specified metric has insufficient
    # data", and with several policies the service scales in "only if all target tracking
    # policies (with the scale-in portion enabled) are ready to scale in"
    # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-autoscaling-targettracking.html).
    # The ALB publishes no RequestCountPerTarget while no request flows, so an idle service
    # never scaled in while this policy had scale-in on. It only scales out; the in-flight
    # gauge, which the gateway writes (0 when idle) every 30 s, owns scale-in.
    policy("RequestCountScaling", REQUESTS_PER_TARGET, {
        "PredefinedMetricSpecification": applicationautoscaling.PredefinedMetricSpecification(
            PredefinedMetricType="ALBRequestCountPerTarget",
            ResourceLabel=resource_label)}, True)
    # With scale-to-zero on, MinCapacity is 0 and the in-flight gauge (0 between requests)
    # would take the service to zero on target tracking's own schedule, not after IdleMinutes
    # without a request: the idle policy alone scales in then.
    policy("InFlightScaling", IN_FLIGHT_TARGET, {
        "CustomizedMetricSpecification": applicationautoscaling.CustomizedMetricSpecification(
            Namespace=METRIC_NAMESPACE,
            MetricName=IN_FLIGHT_REQUESTS.name,
            Unit=IN_FLIGHT_REQUESTS.unit,
            Statistic="Average",
            Dimensions=gateway_dimensions)},
        If("ScaleToZeroOn", True, False))
    _scale_to_zero(t, target)

def _scale_to_zero(t, target) -> None:
    """Idle -> 0 tasks and first request -> 1 task: two step policies, each with its alarm."""

    def step(title, capacity):
        # ExactCapacity, one step over the whole metric range (no bounds: -inf..+inf,
        # https://docs.aws.amazon.com/autoscaling/application/APIReference/API_StepAdjustment.html):
        # CloudWatch re-invokes an Auto Scaling action every minute the alarm stays in ALARM
        # ("Except for Auto Scaling actions, the actions happen only on state transitions",
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-actions.html),
        # and an exact capacity is the same on every invocation: the wake cannot stack tasks
        # while the first one starts, and never lowers a service that has targets (the ALB
        # answers 503 itself only when the target group has no registered targets). Step
        # scaling does not scale out again within its cooldown unless the step is larger, so
        # a long cooldown would lock out a second wake: 60 s, one alarm period.
        return t.add_resource(applicationautoscaling.ScalingPolicy(
            title, Condition="ScaleToZeroOn",
            PolicyName=Sub(f"${{AWS::StackName}}-{title}"),
            PolicyType="StepScaling",
            ScalingTargetId=Ref(target),
            StepScalingPolicyConfiguration=applicationautoscaling.StepScalingPolicyConfiguration(
                AdjustmentType="ExactCapacity", Cooldown=60,
                StepAdjustments=[applicationautoscaling.StepAdjustment(
                    ScalingAdjustment=capacity)]),
        ))

    def alb_metric(metric_id, name):
        return cloudwatch.MetricDataQuery(
            Id=metric_id, ReturnData=False,
            MetricStat=cloudwatch.MetricStat(
                Metric=cloudwatch.Metric(
                    Namespace="AWS/ApplicationELB", MetricName=name,
                    Dimensions=[cloudwatch.MetricDimension(
                        Name="LoadBalancer", Value=Ref(names.LOAD_BALANCER_FULL_NAME))]),
                Period=60, Stat="Sum"))

    idle, wake = step("IdleScaling", 0), step("WakeScaling", 1)
    # Idle: no request reached the load balancer for IdleMinutes. RequestCount counts only
    # requests routed to a target, so at zero tasks the 503s are added: a client retrying
    # during a wake keeps this alarm OK (otherwise it would re-invoke "0 tasks" every minute
    # against the wake). The ALB publishes no datapoint when nothing flows: missing data is
    # breaching (TreatMissingData,
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
    t.add_resource(cloudwatch.Alarm(
        "IdleAlarm", Condition="ScaleToZeroOn",
        AlarmDescription="No request for IdleMinutes: scale the service to 0 tasks",
        Metrics=[alb_metric("requests", "RequestCount"),
                 alb_metric("rejected", "HTTPCode_ELB_503_Count"),
                 cloudwatch.MetricDataQuery(
                     Id="attempts", Expression="FILL(requests, 0) + FILL(rejected, 0)",
                     Label="requests reaching the load balancer", ReturnData=True)],
        EvaluationPeriods=Ref(IDLE_MINUTES), DatapointsToAlarm=Ref(IDLE_MINUTES),
        Threshold=0, ComparisonOperator="LessThanOrEqualToThreshold",
        TreatMissingData="breaching",
        AlarmActions=[Ref(idle)],
    ))
    # Wake: the load balancer answered 503 itself, which with no registered target is every
    # request (https://repost.aws/knowledge-center/alb-troubleshoot-503-errors). No 503: no
    # datapoint, not breaching.
    t.add_resource(cloudwatch.Alarm(
        "WakeAlarm", Condition="ScaleToZeroOn",
        AlarmDescription="The load balancer answered 503 (no task): start one task",
        Namespace="AWS/ApplicationELB", MetricName="HTTPCode_ELB_503_Count",
        Dimensions=[cloudwatch.MetricDimension(
            Name="LoadBalancer", Value=Ref(names.LOAD_BALANCER_FULL_NAME))],
        Statistic="Sum", Period=60, EvaluationPeriods=1, DatapointsToAlarm=1,
        Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[Ref(wake)],
    ))

