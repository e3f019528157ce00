"""Service layer: the gateway + Ollama sidecar task, the ECS service and its autoscaling.

The two containers share the task's network namespace (awsvpc): the gateway reaches Ollama on
127.0.0.1:11434, and nothing else can, because Ollama binds to loopback and has no port
mapping. The gateway's settings are injected exactly as app/contract.py declares them.
"""

from __future__ import annotations

from troposphere import (
    Equals,
    FindInMap,
    GetAtt,
    If,
    Join,
    NoValue,
    Ref,
    Sub,
    applicationautoscaling,
    cloudwatch,
    ecs,
    iam,
    logs,
)

from app.contract import (
    GATEWAY_PORT,
    METRIC_DIMENSIONS,
    OLLAMA_PORT,
    SETTINGS,
    TIMEOUTS,
    Source,
    setting,
    uvicorn_environment,
)
from stacks import model_load, names, policies, scaling
from stacks.base import LOG_RETENTION, MODEL, NAMING, Layer, add_output
from stacks.gpu import SERVICE_DEFAULTS
from stacks.parameters import Param, boolean, number, string
from stacks.scaling import (  # autoscaling's parameters; stacks/scaling.py reads them
    IDLE_MINUTES,
    IN_FLIGHT_TARGET,
    REQUESTS_PER_TARGET,
    SCALE_DOWN_SCHEDULE,
    SCALE_TO_ZERO,
    SCALE_TO_ZERO_PARAM,
    SCALE_UP_SCHEDULE,
    SCHEDULE_TIMEZONE,
    SCHEDULED_SCALING,
)

GATEWAY = "gateway"
# Explicit, so the gateway's metric dimension (and the dashboard) can name it without a cycle.
SERVICE_NAME = "${ProjectName}-${EnvironmentName}-gateway"
OLLAMA = "ollama"
# Both images create this user (app/Dockerfile, ollama/Dockerfile); tasks never run as root.
CONTAINER_USER = "10001:10001"
OLLAMA_HOME = "/home/ollama"  # tmpfs: Ollama writes its key pair under $HOME at start
CONTAINER_TMP = "/tmp"  # noqa: S108 (a private tmpfs inside the container, not the host's /tmp)
TMPFS_MIB = {CONTAINER_TMP: 512, OLLAMA_HOME: 64}
# Writable paths the ECS Exec (SSM) agent needs in a read-only container, mounted only when
# ECS Exec is on (aws/containers-roadmap#1359). The SSM agent keeps its state and session files
# under /var/lib/amazon/ssm (aws/amazon-ssm-agent@1c217c89 agent/appconfig/constants_unix.go,
# AgentData, SessionFilesPath). NOT here, on purpose:
# - /var/log/amazon/ssm: on EC2 the ECS agent bind-mounts a host log directory there, read-write,
#   into every container of an Exec-enabled task (aws/amazon-ecs-agent@8dfceca6
#   agent/engine/execcmd/manager_init_task_linux.go, addRequiredBindMounts, ContainerLogDir),
#   and Docker refuses a tmpfs at a bind's destination: "Duplicate mount point"
#   (moby/moby@b985e231 daemon/volumes.go, registerMountPoints). The container would not start.
# - /managed-agents: the ECS agent's own path; it mounts the SSM binaries read-only under
#   /ecs-execute-command-<uuid>/ in the task container (same file, ContainerDepsDirPrefix).
# tests/stacks/test_service.py holds every container mount against those bind destinations.
ECS_EXEC_PATHS = ("/var/lib/amazon/ssm",)
GATEWAY_HEALTH_COMMAND = [
    "CMD", "python", "-c",
    "import sys, urllib.request; "
    f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{GATEWAY_PORT}/healthz', timeout=3)"
    ".status != 200)",
]
# `ollama ps` lists models loaded in memory: the check passes only once the model is loaded,
# not merely present on disk. The image has no curl or wget; it has the ollama CLI and grep.
OLLAMA_HEALTH_COMMAND = "ollama ps | grep -qF -- '${ModelName}' || exit 1"

# Parameters of this layer.
OLLAMA_MEMORY = "OllamaMemoryMiB"
OLLAMA_MEMORY_RESERVATION = "OllamaMemoryReservationMiB"
GRACE_PERIOD = "HealthCheckGracePeriodSeconds"
ECS_EXEC = "EnableExecuteCommand"


# A String of digits, not a Number: it is a Mapping key, and a renderer (cloud-radar) resolves a
# Number Ref to an int that matches no key. Declared once: the monitoring layer reads it too.
MODEL_LOAD_PARAM = string(
    model_load.MODEL_LOAD_SECONDS, "Model-load budget: seconds from task start until the model "
    "is in GPU memory (image pull + Ollama start + load); sets the Ollama health check and start "
    "timeout (stacks/model_load.py)", default=str(model_load.DEFAULT_LOAD_SECONDS),
    allowed_values=tuple(str(load) for load in model_load.LOAD_TIERS))


class ServiceLayer(Layer):
    logical_id = "Service"
    file_name = "service.json"
    description = "Service: gateway + Ollama sidecar task, ECS service, autoscaling"
    root_outputs = (names.SERVICE_NAME, names.GATEWAY_LOG_GROUP_NAME)

    def parameters(self):
        wired = tuple(string(name, description) for name, description in (
            (names.CLUSTER_NAME, "ECS cluster name"),
            (names.CAPACITY_PROVIDER_NAME, "Capacity provider of the GPU instances"),
            (names.AUTO_SCALING_GROUP_NAME, "GPU Auto Scaling group (the wake sets it to 1 "
             "instance)"),
        )) + (
            Param(names.PRIVATE_SUBNET_IDS, "List<AWS::EC2::Subnet::Id>", "Private subnets"),
            Param(names.TASK_SECURITY_GROUP_ID, "AWS::EC2::SecurityGroup::Id",
                  "Task security group"),
        ) + tuple(string(name, description) for name, description in (
            (names.VPC_CIDR, "VPC CIDR: the proxies whose X-Forwarded-For is trusted"),
            (names.TARGET_GROUP_ARN, "Gateway target group"),
            (names.LISTENER_ARN, "HTTPS listener (the service waits for it)"),
            (names.LOAD_BALANCER_FULL_NAME, "app/<name>/<id> of the ALB"),
            (names.TARGET_GROUP_FULL_NAME, "targetgroup/<name>/<id>"),
            (names.KMS_KEY_ARN, "KMS key of log groups, secret and alarm topic"),
            (names.API_KEY_SECRET_ARN, "Secret holding the API keys"),
            (names.GATEWAY_IMAGE_URI, "Gateway image URI (repository:tag)"),
            (names.OLLAMA_IMAGE_URI, "Ollama image URI (repository:tag)"),
            (names.GATEWAY_REPOSITORY_ARN, "Gateway ECR repository ARN"),
            (names.OLLAMA_REPOSITORY_ARN, "Ollama ECR repository ARN"),
        ))
        # The config layer's SSM parameter ARNs, one per Source.SSM setting of the contract.
        settings = tuple(string(names.setting_parameter_output(item.env),
                                f"ARN of the SSM parameter of {item.env}")
                         for item in SETTINGS if item.source is Source.SSM)
        return NAMING + wired + settings + MODEL + (
            LOG_RETENTION,
            number(OLLAMA_MEMORY, "Hard memory limit of the Ollama container (MiB); leave room "
                   "for the agent and the gateway", default=14336, min_value=1024),
            number(OLLAMA_MEMORY_RESERVATION, "Memory reserved for Ollama (MiB) when placing "
                   "the task", default=8192, min_value=512),
            number(names.SERVICE_MIN_TASKS, "Fewest tasks (autoscaling minimum)",
                   default=SERVICE_DEFAULTS[names.SERVICE_MIN_TASKS], min_value=0, max_value=100),
            number(names.SERVICE_MAX_TASKS, "Most tasks (autoscaling maximum; one GPU each)",
                   default=SERVICE_DEFAULTS[names.SERVICE_MAX_TASKS], min_value=0, max_value=100),
            number(names.DEPLOYMENT_MAX_PERCENT, "Tasks a deploy may run, in % of desired "
                   "(needs spare GPUs: tools/rollout.py)",
                   default=SERVICE_DEFAULTS[names.DEPLOYMENT_MAX_PERCENT], min_value=100,
                   max_value=400),
            number(names.DEPLOYMENT_MIN_HEALTHY_PERCENT, "Tasks that must stay healthy during a "
                   "deploy, in % of desired (below 100: downtime)",
                   default=SERVICE_DEFAULTS[names.DEPLOYMENT_MIN_HEALTHY_PERCENT], min_value=0,
                   max_value=100),
            MODEL_LOAD_PARAM,
            number(GRACE_PERIOD, "Seconds the service ignores failing load balancer and "
                   "container health checks after a task starts; at least ModelLoadSeconds + "
                   "the Ollama check interval + HealthyThresholdCount x "
                   "HealthCheckIntervalSeconds (make rollout-check)", default=900, min_value=60,
                   max_value=7200),
            boolean(ECS_EXEC, "Allow ECS Exec into the containers (off in prod)", "false"),
            number(REQUESTS_PER_TARGET, "Target tracking: ALB requests per task per minute",
                   default=30, min_value=1),
            number(IN_FLIGHT_TARGET, "Target tracking: average in-flight requests per task "
                   "(below OllamaNumParallel leaves headroom)", default=3, min_value=1),
            boolean(SCHEDULED_SCALING, "Scale to zero on ScaleDownSchedule and back on "
                    "ScaleUpSchedule (e.g. dev at night)", "false"),
            string(SCALE_DOWN_SCHEDULE, "When to scale to zero (Application Auto Scaling "
                   "schedule expression)", default="cron(0 20 ? * MON-FRI *)"),
            string(SCALE_UP_SCHEDULE, "When to restore ServiceMinTasks",
                   default="cron(0 7 ? * MON-FRI *)"),
            string(SCHEDULE_TIMEZONE, "IANA time zone of the schedules", default="UTC"),
            SCALE_TO_ZERO_PARAM,
            number(IDLE_MINUTES, "Scale-to-zero: minutes without an authenticated request (one "
                   "with a bearer key, served or answered 503) before the service goes to 0 "
                   "tasks; longer than a wake (docs/infrastructure.md, Scale to zero)",
                   default=30, min_value=20, max_value=1440),
        )

    def build(self):
        t = self.new_template()
        self.t = t
        self.add_parameters(t)
        self.parameter_arns = {item.env: Ref(names.setting_parameter_output(item.env))
                               for item in SETTINGS if item.source is Source.SSM}

        # Rules 1 and 2 of stacks/model_load.py, per load tier (CloudFormation has no arithmetic).
        t.add_mapping(model_load.MAPPING, model_load.mapping())
        t.add_condition("ExecOn", Equals(Ref(ECS_EXEC), "true"))
        t.add_condition("ScheduleOn", Equals(Ref(SCHEDULED_SCALING), "true"))
        t.add_condition("ScaleToZeroOn", Equals(Ref(SCALE_TO_ZERO), "true"))

        gateway_logs, ollama_logs = (
            t.add_resource(logs.LogGroup(
                title, RetentionInDays=Ref(names.LOG_RETENTION_DAYS),
                KmsKeyId=Ref(names.KMS_KEY_ARN),
                # Retained: the request log is the audit trail; teardown reports it.
                DeletionPolicy="Retain", UpdateReplacePolicy="Retain"))
            for title in ("GatewayLogGroup", "OllamaLogGroup")
        )
        execution_role, task_role = self._roles(gateway_logs, ollama_logs)
        task_definition = self._task_definition(execution_role, task_role, gateway_logs,
                                                ollama_logs)
        service = self._service(task_definition)
        scaling.add_autoscaling(t, service, self._resource_label(),
                                metric_dimensions(applicationautoscaling.MetricDimension),
                                metric_dimensions(cloudwatch.MetricDimension))

        add_output(t, names.SERVICE_NAME, GetAtt(service, "Name"), "ECS service name")
        add_output(t, names.TASK_DEFINITION_ARN, Ref(task_definition),
                   "Task definition the service runs (a deploy checks it is the new one)")
        add_output(t, names.GATEWAY_LOG_GROUP_NAME, Ref(gateway_logs),
                   "Log group of the gateway (request log lines and EMF metrics)")
        add_output(t, names.OLLAMA_LOG_GROUP_NAME, Ref(ollama_logs), "Log group of Ollama")
        add_output(t, names.REQUEST_COUNT_RESOURCE_LABEL, self._resource_label(),
                   "ALBRequestCountPerTarget resource label of the scaling policy")
        return t

    # -- names -----------------------------------------------------------------------------

    @staticmethod
    def _service_name() -> Sub:
        return Sub(SERVICE_NAME)

    @staticmethod
    def _resource_label() -> Join:
        return Join("/", [Ref(names.LOAD_BALANCER_FULL_NAME), Ref(names.TARGET_GROUP_FULL_NAME)])

    # -- IAM -------------------------------------------------------------------------------

    def _roles(self, gateway_logs, ollama_logs):
        t = self.t
        execution_role = t.add_resource(iam.Role(
            "ExecutionRole",
            AssumeRolePolicyDocument=policies.ecs_tasks_trust(),
            Policies=[iam.Policy(
                PolicyName="start-task",
                PolicyDocument=policies.execution_role_policy(
                    repository_arns=[Ref(names.GATEWAY_REPOSITORY_ARN),
                                     Ref(names.OLLAMA_REPOSITORY_ARN)],
                    log_group_arns=[GetAtt(gateway_logs, "Arn"), GetAtt(ollama_logs, "Arn")],
                    parameter_arns=[self.parameter_arns[env] for env in sorted(self.parameter_arns)],
                    secret_arn=Ref(names.API_KEY_SECRET_ARN),
                    key_arn=Ref(names.KMS_KEY_ARN),
                ),
            )],
        ))
        # The containers' own identity: nothing, unless ECS Exec is on.
        task_role = t.add_resource(iam.Role(
            "TaskRole",
            AssumeRolePolicyDocument=policies.ecs_tasks_trust(),
            Policies=If("ExecOn", [iam.Policy(PolicyName="ecs-exec",
                                              PolicyDocument=policies.ecs_exec_policy())],
                        NoValue),
        ))
        return execution_role, task_role

    # -- task definition ---------------------------------------------------------------------

    def _task_definition(self, execution_role, task_role, gateway_logs, ollama_logs):
        t = self.t

        def log_configuration(group, prefix):
            return ecs.LogConfiguration(LogDriver="awslogs", Options={
                "awslogs-group": Ref(group),
                "awslogs-region": Ref("AWS::Region"),
                "awslogs-stream-prefix": prefix,
                # A slow CloudWatch Logs call must not block the gateway's stdout.
                "mode": "non-blocking",
                "max-buffer-size": "25m",
            })

        def budget(key):
            return FindInMap(model_load.MAPPING, Ref(model_load.MODEL_LOAD_SECONDS), key)

        def tmpfs(paths):
            return [ecs.Tmpfs(ContainerPath=path, Size=TMPFS_MIB.get(path, 64),
                              MountOptions=["noexec", "nosuid", "nodev"] if path != CONTAINER_TMP else
                              ["nosuid", "nodev"])
                    for path in paths]

        environment = [
            ecs.Environment(Name="OLLAMA_BASE_URL", Value=setting("OLLAMA_BASE_URL").default_text),
            ecs.Environment(Name="GATEWAY_LOG_LEVEL", Value=setting("GATEWAY_LOG_LEVEL").default_text),
            ecs.Environment(Name="GATEWAY_CLUSTER_NAME", Value=Ref(names.CLUSTER_NAME)),
            ecs.Environment(Name="GATEWAY_SERVICE_NAME", Value=self._service_name()),
            # uvicorn trusts X-Forwarded-For only from the ALB, which lives in the VPC.
            ecs.Environment(Name="FORWARDED_ALLOW_IPS", Value=Ref(names.VPC_CIDR)),
        ]
        # uvicorn's timeouts from the budget: the image's CMD carries none, uvicorn reads
        # UVICORN_* (app/contract.py, uvicorn_environment, says where that is documented).
        uvicorn = uvicorn_environment()
        environment += [ecs.Environment(Name=name, Value=value) for name, value in uvicorn.items()]
        declared_task = {s.env for s in SETTINGS if s.source is Source.TASK}
        set_here = {e.Name for e in environment} - {"FORWARDED_ALLOW_IPS", *uvicorn}
        if declared_task != set_here:  # pragma: no cover - a contract change reached here
            raise ValueError(f"task environment {sorted(set_here)} != contract {sorted(declared_task)}")
        secrets = [ecs.Secret(Name=s.env, ValueFrom=Ref(names.API_KEY_SECRET_ARN))
                   for s in SETTINGS if s.source is Source.SECRET]
        secrets += [ecs.Secret(Name=env, ValueFrom=arn) for env, arn in sorted(self.parameter_arns.items())]

        gateway = ecs.ContainerDefinition(
            Name=GATEWAY,
            Image=Ref(names.GATEWAY_IMAGE_URI),
            Essential=True,
            User=CONTAINER_USER,
            ReadonlyRootFilesystem=True,
            PortMappings=[ecs.PortMapping(ContainerPort=GATEWAY_PORT, Protocol="tcp")],
            DependsOn=[ecs.ContainerDependency(ContainerName=OLLAMA, Condition="HEALTHY")],
            Environment=environment,
            Secrets=secrets,
            MemoryReservation=256,
            Memory=1024,
            StopTimeout=TIMEOUTS.container_stop_timeout_seconds,
            LinuxParameters=ecs.LinuxParameters(
                InitProcessEnabled=True,
                Tmpfs=If("ExecOn", tmpfs((CONTAINER_TMP,) + ECS_EXEC_PATHS), tmpfs((CONTAINER_TMP,))),
            ),
            HealthCheck=ecs.HealthCheck(Command=GATEWAY_HEALTH_COMMAND, Interval=15, Timeout=5,
                                        Retries=3, StartPeriod=30),
            LogConfiguration=log_configuration(gateway_logs, GATEWAY),
        )
        ollama = ecs.ContainerDefinition(
            Name=OLLAMA,
            Image=Ref(names.OLLAMA_IMAGE_URI),
            Essential=True,
            User=CONTAINER_USER,
            ReadonlyRootFilesystem=True,
            # No PortMappings: in awsvpc a mapping would open the port on the task's ENI.
            Environment=[
                ecs.Environment(Name="OLLAMA_HOST", Value=f"127.0.0.1:{OLLAMA_PORT}"),
                ecs.Environment(Name="OLLAMA_KEEP_ALIVE", Value="-1"),
                ecs.Environment(Name="OLLAMA_NUM_PARALLEL", Value=Ref(names.OLLAMA_NUM_PARALLEL)),
                ecs.Environment(Name="OLLAMA_MAX_LOADED_MODELS", Value="1"),
                ecs.Environment(Name="OLLAMA_CONTEXT_LENGTH",
                                Value=setting("GATEWAY_CONTEXT_TOKENS").default_text),
                ecs.Environment(Name="OLLAMA_MODEL", Value=Ref(names.MODEL_NAME)),
                ecs.Environment(Name="OLLAMA_NOPRUNE", Value="1"),
                ecs.Environment(Name="HOME", Value=OLLAMA_HOME),
                ecs.Environment(Name="OLLAMA_TMPDIR", Value=CONTAINER_TMP),
            ],
            ResourceRequirements=[ecs.ResourceRequirement(Type="GPU", Value="1")],
            Memory=Ref(OLLAMA_MEMORY),
            MemoryReservation=Ref(OLLAMA_MEMORY_RESERVATION),
            StopTimeout=TIMEOUTS.container_stop_timeout_seconds,
            LinuxParameters=ecs.LinuxParameters(
                InitProcessEnabled=True,
                Tmpfs=If("ExecOn", tmpfs((CONTAINER_TMP, OLLAMA_HOME) + ECS_EXEC_PATHS),
                         tmpfs((CONTAINER_TMP, OLLAMA_HOME))),
            ),
            # From the model-load budget (stacks/model_load.py): the check does not give up
            # while the model loads within ModelLoadSeconds, and the gateway's dependsOn HEALTHY
            # wait ends (StartTimeout of this, the dependency container) when the check would.
            HealthCheck=ecs.HealthCheck(
                Command=["CMD-SHELL", Sub(OLLAMA_HEALTH_COMMAND)],
                Interval=budget("OllamaCheckInterval"), Timeout=budget("OllamaCheckTimeout"),
                Retries=budget("OllamaCheckRetries"),
                StartPeriod=budget("OllamaCheckStartPeriod")),
            StartTimeout=budget("OllamaStartTimeout"),
            LogConfiguration=log_configuration(ollama_logs, OLLAMA),
        )
        return t.add_resource(ecs.TaskDefinition(
            "TaskDefinition",
            Family=Sub("${ProjectName}-${EnvironmentName}-llm"),
            NetworkMode="awsvpc",
            RequiresCompatibilities=["EC2"],
            ExecutionRoleArn=GetAtt(execution_role, "Arn"),
            TaskRoleArn=GetAtt(task_role, "Arn"),
            ContainerDefinitions=[ollama, gateway],
        ))

    # -- service ---------------------------------------------------------------------------

    def _service(self, task_definition):
        return self.t.add_resource(ecs.Service(
            "Service",
            ServiceName=self._service_name(),
            Cluster=Ref(names.CLUSTER_NAME),
            TaskDefinition=Ref(task_definition),
            # No DesiredCount: autoscaling owns it, and a stack update must not reset it.
            # No LaunchType: a capacity provider strategy excludes one.
            CapacityProviderStrategy=[ecs.CapacityProviderStrategyItem(
                CapacityProvider=Ref(names.CAPACITY_PROVIDER_NAME), Weight=1, Base=0)],
            NetworkConfiguration=ecs.NetworkConfiguration(AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                AssignPublicIp="DISABLED",
                Subnets=Ref(names.PRIVATE_SUBNET_IDS),
                SecurityGroups=[Ref(names.TASK_SECURITY_GROUP_ID)],
            )),
            LoadBalancers=[ecs.LoadBalancer(ContainerName=GATEWAY, ContainerPort=GATEWAY_PORT,
                                            TargetGroupArn=Ref(names.TARGET_GROUP_ARN))],
            HealthCheckGracePeriodSeconds=Ref(GRACE_PERIOD),
            DeploymentConfiguration=ecs.DeploymentConfiguration(
                MaximumPercent=Ref(names.DEPLOYMENT_MAX_PERCENT),
                MinimumHealthyPercent=Ref(names.DEPLOYMENT_MIN_HEALTHY_PERCENT),
                DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
            ),
            PlacementStrategies=[
                ecs.PlacementStrategy(Type="spread", Field="attribute:ecs.availability-zone"),
                ecs.PlacementStrategy(Type="spread", Field="instanceId"),
            ],
            EnableECSManagedTags=True,
            PropagateTags="SERVICE",
            EnableExecuteCommand=If("ExecOn", True, False),
            # The target group must be attached to the HTTPS listener before the service
            # registers tasks in it; root passes ListenerArn so this stack waits for it.
            Metadata={"AfterListener": Ref(names.LISTENER_ARN)},
        ))


def metric_dimensions(cls):
    """The gateway metric's dimensions (app/contract.py) as the gateway sets them."""
    values = {"ClusterName": Ref(names.CLUSTER_NAME), "ServiceName": Sub(SERVICE_NAME)}
    return [cls(Name=name, Value=values[name]) for name in METRIC_DIMENSIONS]
