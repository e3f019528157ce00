"""Monitoring layer: the alarm topic, the alarms that notify it, the placement-failure rule, the dashboard.

Its own layer (after the service, whose name it watches) so alarms and dashboards change without
touching the task definition. Alarms that drive scaling are not here: target tracking creates
its own, beside its policies in the service layer.
"""

from __future__ import annotations

import json

from troposphere import (
    AWSHelperFn,
    Equals,
    FindInMap,
    GetAtt,
    If,
    Not,
    Ref,
    Sub,
    cloudwatch,
    events,
    sns,
)

from app.contract import IN_FLIGHT_REQUESTS, METRIC_NAMESPACE, OUTPUT_TOKENS, TIME_TO_FIRST_TOKEN
from stacks import model_load, names, policies, wake
from stacks.base import NAMING, Layer, add_output
from stacks.parameters import number, string
from stacks.service import MODEL_LOAD_PARAM, SCALE_TO_ZERO_PARAM, SERVICE_NAME, metric_dimensions

ALARM_EMAIL = "AlarmEmail"
TTFT_THRESHOLD = "TimeToFirstTokenP95AlarmMs"


class MonitoringLayer(Layer):
    logical_id = "Monitoring"
    file_name = "monitoring.json"
    description = "Monitoring: alarm topic, alarms, placement-failure rule, dashboard"
    root_outputs = (names.ALARM_TOPIC_ARN,)

    def parameters(self):
        return NAMING + (
            string(names.CLUSTER_NAME, "ECS cluster name"),
            string(names.SERVICE_NAME, "ECS service name (placement failures)"),
            string(names.CAPACITY_PROVIDER_NAME, "Capacity provider of the GPU instances"),
            string(names.LOAD_BALANCER_FULL_NAME, "app/<name>/<id> of the ALB"),
            string(names.TARGET_GROUP_FULL_NAME, "targetgroup/<name>/<id>"),
            string(names.KMS_KEY_ARN, "KMS key of log groups, secret and alarm topic"),
            string(ALARM_EMAIL, "E-mail subscribed to the alarm topic (empty: none)", default="",
                   pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$",
                   constraint="empty, or an e-mail address"),
            number(TTFT_THRESHOLD, "Alarm when time to first token p95 exceeds this (ms)",
                   default=10000, min_value=100),
            MODEL_LOAD_PARAM,
            SCALE_TO_ZERO_PARAM,
        )

    def build(self):
        t = self.new_template()
        self.t = t
        self.add_parameters(t)
        t.add_condition("HasAlarmEmail", Not(Equals(Ref(ALARM_EMAIL), "")))
        t.add_condition("ScaleToZeroOn", Equals(Ref(SCALE_TO_ZERO_PARAM.name), "true"))
        t.add_mapping(wake.MAPPING, wake.mapping())

        topic = self._alarms()
        self._dashboard()
        add_output(t, names.ALARM_TOPIC_ARN, Ref(topic), "SNS topic the alarms publish to")
        return t

    def _alarms(self):
        t = self.t
        topic = t.add_resource(sns.Topic(
            "AlarmTopic", KmsMasterKeyId=Ref(names.KMS_KEY_ARN),
            DisplayName=Sub("${ProjectName}-${EnvironmentName} LLM API alarms")))
        t.add_resource(sns.SubscriptionResource(
            "AlarmEmailSubscription", Condition="HasAlarmEmail", Protocol="email",
            Endpoint=Ref(ALARM_EMAIL), TopicArn=Ref(topic)))
        rule = t.add_resource(events.Rule(
            "PlacementFailureRule",
            Description="Tasks of the gateway service that ECS cannot place (no GPU capacity)",
            EventPattern={
                "source": ["aws.ecs"],
                "detail-type": ["ECS Service Action"],
                "resources": [Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:"
                                  "service/${ClusterName}/${Name}",
                                  Name=Ref(names.SERVICE_NAME))],
                "detail": {"eventName": ["SERVICE_TASK_PLACEMENT_FAILURE"]},
            },
            Targets=[events.Target(Id="alarm-topic", Arn=Ref(topic))],
        ))
        t.add_resource(sns.TopicPolicy(
            "AlarmTopicPolicy", Topics=[Ref(topic)],
            PolicyDocument=policies.alarm_topic_policy(Ref(topic), GetAtt(rule, "Arn"))))

        alb = [cloudwatch.MetricDimension(Name="LoadBalancer",
                                          Value=Ref(names.LOAD_BALANCER_FULL_NAME))]
        target_group = alb + [cloudwatch.MetricDimension(
            Name="TargetGroup", Value=Ref(names.TARGET_GROUP_FULL_NAME))]
        service_dims = metric_dimensions(cloudwatch.MetricDimension)

        def alarm(title, description, namespace, metric, dimensions, threshold, statistic="Sum",
                  periods=5, period=60, datapoints=None, extended=None):
            stat = {"ExtendedStatistic": extended} if extended else {"Statistic": statistic}
            t.add_resource(cloudwatch.Alarm(
                title,
                AlarmDescription=description,
                Namespace=namespace, MetricName=metric, Dimensions=dimensions,
                Period=period, EvaluationPeriods=periods,
                DatapointsToAlarm=datapoints or periods,
                Threshold=threshold, ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="notBreaching",
                AlarmActions=[Ref(topic)], OKActions=[Ref(topic)],
                **stat,
            ))

        alarm("Target5xxAlarm", "Gateway answered 5xx (upstream failures: 502/503/504)",
              "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", target_group, 10,
              periods=5, datapoints=3)
        self._elb_5xx_alarm(topic, alb)
        alarm("UnhealthyHostsAlarm", "A gateway target fails /readyz outside a deploy",
              "AWS/ApplicationELB", "UnHealthyHostCount", target_group, 1, statistic="Maximum",
              periods=10, datapoints=8)
        alarm("TimeToFirstTokenAlarm", "Time to first token p95 is above its threshold "
              "(TargetResponseTime means different things for streams and non-streams)",
              METRIC_NAMESPACE, TIME_TO_FIRST_TOKEN.name, service_dims, Ref(TTFT_THRESHOLD),
              periods=3, period=300, extended="p95")
        # Container Insights' PendingTaskCount is "the number of tasks currently in the PENDING
        # state" (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html);
        # a task waiting for a GPU instance is PROVISIONING, not PENDING: "If the Auto Scaling
        # group can't scale out to accommodate the number of tasks run, the tasks fails to
        # transition beyond the PROVISIONING state"
        # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/asg-capacity-providers.html).
        # So PendingTaskCount pages on a task that has an instance but does not start (pull,
        # Ollama start timeout: stacks/wake.py pending_seconds), and CapacityProviderReservation
        # above 100 ("There are no available instances for the launched tasks",
        # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html)
        # pages on tasks that wait for an instance longer than one cold managed-scaling step.
        # Its dimensions are CapacityProviderName and ClusterName
        # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/tutorial-cluster-auto-scaling-console.html).
        pending = FindInMap(wake.MAPPING, Ref(model_load.MODEL_LOAD_SECONDS), "PendingAlarmMinutes")
        alarm("PendingTasksAlarm", "Tasks on an instance do not start (Container Insights "
              "PendingTaskCount); see docs/operations.md, A task fails health checks",
              "ECS/ContainerInsights", "PendingTaskCount", service_dims, 1,
              statistic="Maximum", periods=pending, datapoints=pending)
        minutes = wake.capacity_alarm_minutes()
        t.add_resource(cloudwatch.Alarm(
            "CapacityProvisioningAlarm",
            AlarmDescription="Tasks wait for GPU capacity (PROVISIONING: "
                             "CapacityProviderReservation above 100); see docs/operations.md, "
                             "A task is stuck in PROVISIONING",
            Namespace="AWS/ECS/ManagedScaling", MetricName="CapacityProviderReservation",
            Dimensions=[cloudwatch.MetricDimension(Name=name, Value=Ref(name)) for name in (
                names.CLUSTER_NAME, names.CAPACITY_PROVIDER_NAME)],
            Statistic="Minimum", Period=60, EvaluationPeriods=minutes, DatapointsToAlarm=minutes,
            Threshold=100, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=[Ref(topic)], OKActions=[Ref(topic)],
        ))
        return topic

    def _elb_5xx_alarm(self, topic, alb):
        """5xx the load balancer answered itself; with scale-to-zero on, without its 503s.

        At zero tasks every request gets the load balancer's own 503 (no registered target,
        https://repost.aws/knowledge-center/alb-troubleshoot-503-errors): with scale-to-zero on
        that is the wake signal (stacks/scaling.py), not a failure, so the alarm counts
        HTTPCode_ELB_5XX_Count minus HTTPCode_ELB_503_Count (502 and 504 still page). FILL gives
        the 503 series a 0 where it has no datapoint, so a minute of 502s alone still counts.
        """
        def stat(metric_id, name):
            return cloudwatch.MetricDataQuery(
                Id=metric_id, ReturnData=False, MetricStat=cloudwatch.MetricStat(
                    Metric=cloudwatch.Metric(Namespace="AWS/ApplicationELB", MetricName=name,
                                             Dimensions=alb),
                    Period=60, Stat="Sum"))

        def expression(text):
            return cloudwatch.MetricDataQuery(Id="failures", Expression=text, ReturnData=True,
                                              Label="load balancer 5xx counted")

        self.t.add_resource(cloudwatch.Alarm(
            "Elb5xxAlarm",
            AlarmDescription="The load balancer answered 5xx itself (no healthy target, "
                             "connection errors, idle timeouts; not its 503s with scale-to-zero on)",
            Metrics=If("ScaleToZeroOn",
                       [stat("elb5xx", "HTTPCode_ELB_5XX_Count"),
                        stat("elb503", "HTTPCode_ELB_503_Count"),
                        expression("elb5xx - FILL(elb503, 0)")],
                       [stat("elb5xx", "HTTPCode_ELB_5XX_Count"), expression("elb5xx")]),
            EvaluationPeriods=5, DatapointsToAlarm=3, Threshold=10,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
            AlarmActions=[Ref(topic)], OKActions=[Ref(topic)],
        ))

    def _dashboard(self):
        self.t.add_resource(cloudwatch.Dashboard(
            "Dashboard",
            DashboardName=Sub("${ProjectName}-${EnvironmentName}-llm-api"),
            DashboardBody=DashboardBody(),
        ))


class DashboardBody(AWSHelperFn):
    """The dashboard JSON as Fn::Sub over a deterministic json.dumps, variables left to Sub."""

    def __init__(self) -> None:
        region = "${AWS::Region}"
        lb, tg = "${LoadBalancerFullName}", "${TargetGroupFullName}"
        service = ["ClusterName", "${ClusterName}", "ServiceName", SERVICE_NAME]

        def widget(title, metrics, x, y, stat="Sum"):
            return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                    "properties": {"title": title, "region": region, "stat": stat,
                                   "period": 60, "metrics": metrics}}

        body = {"widgets": [
            widget("Requests and 5xx", [
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", lb],
                [".", "HTTPCode_Target_5XX_Count", "LoadBalancer", lb, "TargetGroup", tg],
                [".", "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb]], 0, 0),
            widget("In-flight requests per task", [
                [METRIC_NAMESPACE, IN_FLIGHT_REQUESTS.name, *service, {"stat": "Average"}],
                ["...", {"stat": "Maximum"}]], 12, 0, stat="Average"),
            widget("Time to first token (ms)", [
                [METRIC_NAMESPACE, TIME_TO_FIRST_TOKEN.name, *service, {"stat": "p50"}],
                ["...", {"stat": "p95"}]], 0, 6, stat="p95"),
            widget("Output tokens per second", [
                [{"expression": "m1/PERIOD(m1)", "label": "tokens/s", "id": "e1"}],
                [METRIC_NAMESPACE, OUTPUT_TOKENS.name, *service, {"id": "m1", "visible": False}]],
                12, 6),
            widget("Healthy targets and pending tasks", [
                ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", tg, "LoadBalancer", lb],
                [".", "UnHealthyHostCount", ".", ".", ".", "."],
                ["ECS/ContainerInsights", "PendingTaskCount", *service],
                [".", "RunningTaskCount", *service]], 0, 12, stat="Maximum"),
        ]}
        self.data = {"Fn::Sub": json.dumps(body, sort_keys=True)}

