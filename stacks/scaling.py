"""Service autoscaling: the scalable target, target tracking, schedules and scale-to-zero.

Part of the service layer (stacks/service.py declares the parameters named here and calls
add_autoscaling); its own module so the scaling rules read in one place.
"""

from __future__ import annotations

from troposphere import (
    GetAtt,
    If,
    NoValue,
    Ref,
    Sub,
    applicationautoscaling,
    autoscaling,
    cloudwatch,
)

from app.contract import IN_FLIGHT_REQUESTS, METRIC_NAMESPACE
from stacks import names
from stacks.parameters import boolean

REQUESTS_PER_TARGET = "RequestsPerTargetPerMinute"
IN_FLIGHT_TARGET = "InFlightRequestsPerTask"
SCHEDULED_SCALING = "ScheduledScaling"
SCALE_DOWN_SCHEDULE = "ScaleDownSchedule"
SCALE_UP_SCHEDULE = "ScaleUpSchedule"
SCHEDULE_TIMEZONE = "ScheduleTimezone"
SCALE_TO_ZERO = "ScaleToZero"
IDLE_MINUTES = "IdleMinutes"

# Declared once: the service (policies, alarms) and monitoring layers read it.
SCALE_TO_ZERO_PARAM = boolean(
    SCALE_TO_ZERO, "Go to 0 tasks after IdleMinutes without an authenticated request and wake "
    "on the next one (it gets the load balancer's 503 until a task is ready; "
    "docs/infrastructure.md, Scale to zero)",
    "false")

SCALE_OUT_COOLDOWN = 60  # seconds: add capacity fast
SCALE_IN_COOLDOWN = 900  # seconds: a model load is expensive; shed capacity slowly


def add_autoscaling(t, service, resource_label, gateway_dimensions, service_dimensions) -> None:
    """The scalable target, its two target-tracking policies and, when on, scale-to-zero.

    gateway_dimensions: the gateway metric's dimensions for target tracking;
    service_dimensions: ClusterName and ServiceName as CloudWatch alarm dimensions.
    """
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
    _scale_to_zero(t, target, service_dimensions)


def _step(t, target, title, capacity, breach):
    """A step policy that sets exactly `capacity` tasks on every invocation.

    CloudWatch re-invokes an Auto Scaling action every minute the alarm stays in ALARM ("Except
    for Auto Scaling actions, the actions happen only on state transitions",
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-actions.html); an exact
    capacity is the same on every invocation. One step covering the breaching side of the
    threshold: "The upper and lower bound can't be null in the same step adjustment", and the
    bounds are relative to the threshold (0 is the threshold itself)
    (https://docs.aws.amazon.com/autoscaling/application/APIReference/API_StepAdjustment.html).
    breach "above": metric >= threshold (lower bound 0); "below": metric <= threshold (upper 0).
    Step scaling does not scale out again within its cooldown unless the step is larger, so a
    long cooldown would lock out a second wake: 60 s, one alarm period.
    """
    bound = {"above": {"MetricIntervalLowerBound": 0},
             "below": {"MetricIntervalUpperBound": 0}}[breach]
    return t.add_resource(applicationautoscaling.ScalingPolicy(
        title, Condition="ScaleToZeroOn",
        PolicyName=Sub(f"${{AWS::StackName}}-{title}"),
        PolicyType="StepScaling",
        ScalingTargetId=Ref(target),
        StepScalingPolicyConfiguration=applicationautoscaling.StepScalingPolicyConfiguration(
            AdjustmentType="ExactCapacity", Cooldown=60,
            StepAdjustments=[applicationautoscaling.StepAdjustment(
                ScalingAdjustment=capacity, **bound)]),
    ))


def _stat(metric_id, namespace, name, dimensions, stat="Sum"):
    return cloudwatch.MetricDataQuery(
        Id=metric_id, ReturnData=False,
        MetricStat=cloudwatch.MetricStat(
            Metric=cloudwatch.Metric(Namespace=namespace, MetricName=name, Dimensions=dimensions),
            Period=60, Stat=stat))


def _instance_wake(t):
    """The wake alarm's second action: exactly 1 instance in the GPU group (cluster layer).

    ECS advises against it: "Don't change or manage the desired capacity for the Auto Scaling
    group that's associated with a capacity provider with any scaling policies other than the
    one Amazon ECS manages" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html).
    This one stays out of managed scaling's way: it exists only with scale-to-zero, its alarm
    breaches only while the service runs no task and an authenticated request waits, and 1
    instance is what managed scaling itself settles on for the one waking task (one GPU per
    task). Where the two disagree, nothing is cut: new instances are protected from scale-in
    (NewInstancesProtectedFromScaleIn; managed termination protection keeps instances with
    tasks protected), and "if all instances in an Auto Scaling group are protected from scale
    in, and a scale-in event occurs, its desired capacity is decremented. However, the Auto
    Scaling group can't terminate the required number of instances"
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html);
    AsgMinSize still bounds it. Once a task runs the alarm is OK and managed scaling alone sizes
    the group. One step from the threshold up (bounds relative to the threshold,
    https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StepAdjustment.html).
    """
    return t.add_resource(autoscaling.ScalingPolicy(
        "InstanceWakeScaling", Condition="ScaleToZeroOn",
        AutoScalingGroupName=Ref(names.AUTO_SCALING_GROUP_NAME), PolicyType="StepScaling",
        AdjustmentType="ExactCapacity",
        StepAdjustments=[autoscaling.StepAdjustments(MetricIntervalLowerBound=0,
                                                     ScalingAdjustment=1)],
    ))


def _scale_to_zero(t, target, service_dimensions) -> None:
    """Idle -> 0 tasks and an authenticated request at 0 tasks -> 1 task (and 1 instance)."""
    idle = _step(t, target, "IdleScaling", 0, "below")
    wake = _step(t, target, "WakeScaling", 1, "above")
    instance = _instance_wake(t)
    alb = [cloudwatch.MetricDimension(Name="LoadBalancer",
                                      Value=Ref(names.LOAD_BALANCER_FULL_NAME))]
    group = alb + [cloudwatch.MetricDimension(Name="TargetGroup",
                                              Value=Ref(names.TARGET_GROUP_FULL_NAME))]
    # What reached the forward rule (stacks/auth_gate.py), and nothing else: requests without a
    # bearer key get the listener's fixed 401, which no metric below counts.
    # - RequestCount with the TargetGroup dimension: requests the load balancer sent to a target
    #   of this group ("This count includes only the requests with a response generated by a
    #   target", https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
    # - HTTPCode_ELB_503_Count: the load balancer's own 503, which with no registered target is
    #   every forwarded request (https://repost.aws/knowledge-center/alb-troubleshoot-503-errors).
    #   The load balancer's own status counts have no TargetGroup dimension (same page:
    #   LoadBalancer, or AvailabilityZone and LoadBalancer); behind the gate only the forward
    #   rule can produce a 503. (HTTPCode_ELB_4XX_Count would count the gate's 401s.)
    served = _stat("served", "AWS/ApplicationELB", "RequestCount", group)
    rejected = _stat("rejected", "AWS/ApplicationELB", "HTTPCode_ELB_503_Count", alb)
    # Container Insights is on (stacks/cluster.py): RunningTaskCount per ClusterName and
    # ServiceName, "the number of tasks currently in the RUNNING state"
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html).
    running = _stat("running", "ECS/ContainerInsights", "RunningTaskCount", service_dimensions,
                    stat="Maximum")

    # Idle: nothing reached the forward rule for IdleMinutes. A client retrying during a wake
    # (its 503s) keeps this alarm OK. TIME_SERIES(0) is "a non-sparse time series where every
    # value is set to a scalar argument"
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html),
    # so the alarm always has a datapoint: an alarm in ALARM on missing data hands Application
    # Auto Scaling no value to pick a step from ("for EC2 Auto Scaling or Application Auto
    # Scaling alarm actions, the Auto Scaling policy uses the information in this field",
    # StateReasonData, https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html).
    t.add_resource(cloudwatch.Alarm(
        "IdleAlarm", Condition="ScaleToZeroOn",
        AlarmDescription="No request reached the forward rule for IdleMinutes: scale the "
                         "service to 0 tasks",
        Metrics=[served, rejected, cloudwatch.MetricDataQuery(
            Id="attempts", Expression="TIME_SERIES(0) + FILL(served, 0) + FILL(rejected, 0)",
            Label="requests that reached the forward rule", ReturnData=True)],
        EvaluationPeriods=Ref(IDLE_MINUTES), DatapointsToAlarm=Ref(IDLE_MINUTES),
        Threshold=0, ComparisonOperator="LessThanOrEqualToThreshold",
        TreatMissingData="breaching",
        AlarmActions=[Ref(idle)],
    ))
    # Wake: 503s while the service runs no task. CloudWatch evaluates the most recent real
    # datapoints when some are missing (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html,
    # "How alarm state is evaluated when data is missing"): on the 503s alone, the alarm stayed
    # in ALARM after the wake and re-set exactly 1 task every minute, cutting a service that
    # target tracking had raised. Gated on RunningTaskCount it reads 0 as soon as a task runs.
    # FILL: a minute without 503s or without a Container Insights datapoint counts 0.
    # The same alarm sets the GPU group to 1 instance (InstanceWakeScaling), so the instance
    # starts now, not after managed scaling's own CloudWatch cycle.
    t.add_resource(cloudwatch.Alarm(
        "WakeAlarm", Condition="ScaleToZeroOn",
        AlarmDescription="An authenticated request got the load balancer's 503 while the "
                         "service runs no task: start one task and one instance",
        Metrics=[rejected, running, cloudwatch.MetricDataQuery(
            Id="waiting", Expression="IF(FILL(running, 0) < 1, FILL(rejected, 0), 0)",
            Label="503s while no task runs", ReturnData=True)],
        EvaluationPeriods=1, DatapointsToAlarm=1,
        Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[Ref(wake), Ref(instance)],
    ))
