"""make preflight ENV=<env>: read-only checks of the target account before anything changes.

    python -m tools.preflight ENV [--image-tag TAG] [--parameter K=V ...] [--strict]

Each check prints [ok], [FAILED] or [could not check] with what it found, what the environment
needs and the exact fix (a command, a params line). An AWS API that cannot answer (access
denied, unknown quota, throttled, no network) is "could not check", never "ok".

Exit status: 1 when any check FAILED (the deploy would fail); 2 for bad input (unknown
environment, no region, no credentials: one line naming it and the fix). "could not check"
prints a loud WARNING and exits 0, so that a role without, say, Service Quotas access can still
deploy; --strict makes it fail instead.

The deploy step calls run_preflight(aws, target, values=..., image_tag=...) first.

Modules: core (outcomes, context, AWS error handling; the only imports from tools.deploy),
capacity (quotas, AZ offerings), domain (certificate, hosted zone, DNS delegation), artifacts
(AMI parameter, ECR images, artifact bucket), runner (order, summary), cli.
"""

from tools.preflight.runner import CHECKS, run_preflight

__all__ = ["CHECKS", "run_preflight"]
