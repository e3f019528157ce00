"""Run every check, print each as it completes, and say whether the deploy may go on."""

from __future__ import annotations

from collections.abc import Callable

from tools.preflight import artifacts, capacity, domain, plan
from tools.preflight.core import (
    Aws,
    CheckUnavailable,
    Context,
    Resolver,
    Result,
    Status,
    Target,
    unavailable,
    unknown,
)

# (title, check) in the order they print: the deploy's own numbers (no AWS call), then
# capacity (the slowest fix: a quota request), the domain, the artifacts.
CHECKS: tuple[tuple[str, Callable[[Context, str], Result]], ...] = (
    *plan.CHECKS, *capacity.CHECKS, *domain.CHECKS, *artifacts.CHECKS)


def run_check(ctx: Context, title: str, check: Callable[[Context, str], Result]) -> Result:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return check(ctx, title)
    except CheckUnavailable as error:
        return unknown(title, error.why, *([error.fix] if error.fix else []))
    except (ClientError, BotoCoreError) as error:  # a call outside call(): still never "ok"
        gap = unavailable(error, "an AWS call")
        return unknown(title, gap.why, gap.fix)


def run_checks(ctx: Context, out: Callable[[str], None] = print) -> list[Result]:
    results = []
    for title, check in CHECKS:
        result = run_check(ctx, title, check)
        for line in result.lines():
            out(line)
        results.append(result)
    return results


def verdict(env: str, results: list[Result], strict: bool) -> tuple[bool, list[str]]:
    """(passed, summary lines). Failed checks fail the run. "could not check" warns loudly and
    lets the deploy go on (a role without e.g. Service Quotas access must still deploy), unless
    strict."""
    count = {status: sum(r.status is status for r in results) for status in Status}
    lines = [f"preflight {env}: {count[Status.OK]} ok, {count[Status.FAILED]} failed, "
             f"{count[Status.UNKNOWN]} could not check"]
    if count[Status.UNKNOWN]:
        lines.append(f"WARNING: {count[Status.UNKNOWN]} check(s) could not run (marked [could "
                     "not check]): nothing is known about them"
                     + ("; --strict makes that a failure" if strict else
                        "; the deploy goes on without them (--strict refuses instead)"))
    passed = not count[Status.FAILED] and not (strict and count[Status.UNKNOWN])
    lines.append(f"preflight {env}: " + ("passed" if passed else
                                         "FAILED: fix the lines marked above, then run it again"))
    return passed, lines


def run_preflight(aws: Aws, target: Target, *, values: dict[str, str] | None = None,
                  image_tag: str | None = None, out: Callable[[str], None] = print,
                  resolver: Resolver | None = None, strict: bool = False) -> bool:
    """Read-only checks of the target account; prints every check; True when deploy may go on.
    values: the root parameters this deploy will use (default params/<env>.json)."""
    ctx = Context(aws=aws, target=target, values=dict(target.params if values is None
                                                      else values),
                  image_tag=image_tag, resolver=resolver or domain.public_dns_resolver)
    out(f"preflight {target.env}: account {target.account}, region {target.region}, stack "
        f"{target.root_stack} (read-only)")
    passed, lines = verdict(target.env, run_checks(ctx, out), strict)
    for line in lines:
        out(line)
    return passed
