"""What the ECS container agent does at run time, read from its source at a pinned commit.

Nothing here can be checked against AWS; the pinned source file is the proof. The template
tests hold the generated task definition against these facts.
"""

from __future__ import annotations

ECS_AGENT_COMMIT = "8dfceca6cf380a83c3007349317566f2862f0673"  # aws/amazon-ecs-agent
MOBY_COMMIT = "b985e2313a8676e18072b442911fc8f64f17d440"  # moby/moby

# Container paths the agent bind-mounts into every container of an ECS Exec-enabled task on
# EC2/Linux, in addition to what the task definition asks for
# (aws/amazon-ecs-agent@8dfceca6 agent/engine/execcmd/manager_init_task_linux.go,
# addRequiredBindMounts: ContainerLogDir read-write, the SSM agent binaries, config and
# certificate read-only under ContainerDepsDirPrefix + <uuid>).
EXEC_LOG_DIR = "/var/log/amazon/ssm"  # ContainerLogDir
EXEC_DEPS_DIR_PREFIX = "/ecs-execute-command-"  # ContainerDepsDirPrefix (+ a fresh UUID)
# What addRequiredBindMounts binds read-only under ContainerDepsDirPrefix + <uuid>: the three SSM
# agent binaries (SSMAgentBinName, SSMAgentWorkerBinName, SessionWorkerBinName), its config
# (ContainerConfigFileSuffix = "configuration/" + containerConfigFileName), its log config
# (ContainerLogConfigFile = "configuration/" + ExecAgentLogConfigFileName) and the TLS CA bundle
# (ContainerCertFileSuffix); agent/engine/execcmd/manager_init_task.go and
# manager_init_task_linux.go at aws/amazon-ecs-agent@8dfceca6. ContainerLogDir is bound read-write.
EXEC_DEPS_FILES = ("amazon-ssm-agent", "ssm-agent-worker", "ssm-session-worker",
                   "configuration/amazon-ssm-agent.json", "configuration/seelog.xml",
                   "certs/amazon-ssm-agent.crt")

# Docker refuses a container whose bind destination is also a tmpfs destination (or a second
# bind): "Duplicate mount point: <dest>" (moby/moby@b985e231 daemon/volumes.go,
# registerMountPoints, lines 156-158; the message is daemon/errors.go duplicateMountPointError).
DUPLICATE_MOUNT_ERROR = "Duplicate mount point"


def collides_with_exec_binds(container_path: str) -> bool:
    """True when a mount or tmpfs at container_path meets one of the agent's exec binds."""
    path = container_path.rstrip("/") or "/"
    return path == EXEC_LOG_DIR or path.startswith(EXEC_DEPS_DIR_PREFIX)
