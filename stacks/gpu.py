"""GPU instance types the cluster may use, with their GPU counts, and the service's sizing defaults.

One task needs one GPU, so the GPU count per instance decides how many tasks an instance can
hold; the rollout check (tools/rollout.py) and the cluster's AllowedValues read this table.
Only types whose GPU count is known here are allowed.
"""

from __future__ import annotations

from stacks import names

GPUS_PER_INSTANCE: dict[str, int] = {
    # NVIDIA T4
    "g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.4xlarge": 1, "g4dn.8xlarge": 1,
    "g4dn.12xlarge": 4, "g4dn.16xlarge": 1,
    # NVIDIA A10G
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1, "g5.16xlarge": 1,
    "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
    # NVIDIA L4
    "g6.xlarge": 1, "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.8xlarge": 1, "g6.16xlarge": 1,
    "g6.12xlarge": 4, "g6.24xlarge": 4, "g6.48xlarge": 8,
    # NVIDIA L40S
    "g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.4xlarge": 1, "g6e.8xlarge": 1, "g6e.16xlarge": 1,
    "g6e.12xlarge": 4, "g6e.24xlarge": 4, "g6e.48xlarge": 8,
}
DEFAULT_INSTANCE_TYPE = "g5.xlarge"


def _size_order(instance_type: str) -> float:
    size = instance_type.split(".", 1)[1]
    return 1 if size == "xlarge" else float(size.removesuffix("xlarge"))


def spot_alternatives() -> dict[str, str]:
    """Type -> the Spot alternative: same family (same GPU model and memory), same GPU count,
    the next size up (or, for the largest, the next size down). Types without one are absent."""
    result = {}
    for kind, gpus in GPUS_PER_INSTANCE.items():
        family = kind.split(".")[0]
        peers = sorted((other for other, count in GPUS_PER_INSTANCE.items()
                        if other != kind and count == gpus and other.split(".")[0] == family),
                       key=_size_order)
        larger = [p for p in peers if _size_order(p) > _size_order(kind)]
        if peers:
            result[kind] = (larger or peers[::-1])[0]
    return result

# Service sizing the rollout check reads before (and after) the service layer declares them;
# the service layer uses these names and defaults for its parameters.
SERVICE_DEFAULTS: dict[str, int] = {
    names.SERVICE_MIN_TASKS: 1,
    names.SERVICE_MAX_TASKS: 2,
    names.DEPLOYMENT_MAX_PERCENT: 200,
    names.DEPLOYMENT_MIN_HEALTHY_PERCENT: 100,
}
