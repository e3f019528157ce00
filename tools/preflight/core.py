"""What every preflight check shares: the three outcomes, one result, the context, AWS errors.

Every import from the deploy tool (tools/deploy/) lives here, in the block below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from stacks import names

# --- the deploy tool: the one place this package imports it from -----------------------------
from tools.deploy.images import IMAGES, read_record  # noqa: F401 (re-exported for the checks)
from tools.deploy.target import (  # noqa: F401 (re-exported for the checks and the CLI)
    Aws,
    DeployError,
    Target,
    hint_for,
    resolve_target,
)

# ---------------------------------------------------------------------------------------------


class Status(Enum):
    OK = "ok"
    FAILED = "FAILED"
    # The API did not answer (access denied, unknown quota, throttled, no network): never "ok".
    UNKNOWN = "could not check"


@dataclass
class Result:
    check: str
    status: Status
    found: str = ""
    needed: str = ""
    fix: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        label = f"[{self.status.value}]"
        out = [f"{label:<18}{self.check}"]
        for key, text in (("found", self.found), ("needed", self.needed)):
            if text:
                out.append(f"{'':<20}{key + ':':<8}{text}")
        for number, text in enumerate(self.fix):
            out.append(f"{'':<20}{'fix:' if number == 0 else '':<8}{text}")
        return out


def ok(check: str, found: str, needed: str = "") -> Result:
    return Result(check, Status.OK, found, needed)


def failed(check: str, found: str, needed: str, *fix: str) -> Result:
    return Result(check, Status.FAILED, found, needed, list(fix))


def unknown(check: str, why: str, *fix: str) -> Result:
    return Result(check, Status.UNKNOWN, why, "", list(fix))


class CheckUnavailable(Exception):
    """An AWS (or DNS) call could not answer: the check becomes "could not check"."""

    def __init__(self, why: str, fix: str = ""):
        super().__init__(why)
        self.why = why
        self.fix = fix


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_text(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    if detail:
        return f"{detail.get('Code', 'Error')}: {detail.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"


# Error codes that mean "this caller may not ask", not "the thing is missing".
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
          "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
          "ExpiredTokenException")


def unavailable(error: Exception, action: str) -> CheckUnavailable:
    """Why an AWS call could not answer, with what to do about it (permission, retry, network)."""
    code = error_code(error)
    text = error_text(error)
    if code in DENIED:
        fix = f"allow {action} to the role you deploy with (read-only), then run preflight again"
    elif "Throttl" in code or code == "TooManyRequestsException":
        fix = "AWS throttled the call (after retries): run preflight again in a minute"
    else:
        fix = hint_for(text) or f"check that {action} works with your credentials in this region"
    return CheckUnavailable(f"{action} did not answer: {text}", fix)


def call(function: Callable, action: str, allow: tuple[str, ...] = (), **arguments):
    """One AWS call. Error codes in allow are raised as they are (the check decides); any other
    error, and any botocore failure (no network, no credentials), becomes CheckUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return function(**arguments)
    except ClientError as error:
        if error_code(error) in allow:
            raise
        raise unavailable(error, action) from None
    except BotoCoreError as error:
        raise unavailable(error, action) from None


def pages(client, operation: str, action: str, key: str, **arguments) -> list[dict]:
    """Every item under key across the pages of a paginated call."""
    paginator = client.get_paginator(operation)
    items: list[dict] = []
    for page in call(lambda **kw: list(paginator.paginate(**kw)), action, **arguments):
        items.extend(page.get(key, []))
    return items


# A resolver takes a DNS name and returns the NS names that public DNS answers for it ([] when
# the name or its NS records do not exist); it raises CheckUnavailable when it cannot ask.
Resolver = Callable[[str], list[str]]


@dataclass
class Context:
    aws: Aws
    target: Target
    values: dict[str, str]  # params/<env>.json with this run's --parameter overrides
    image_tag: str | None
    resolver: Resolver
    _root_stack: dict | None = None
    _looked_up: bool = False

    @property
    def env(self) -> str:
        return self.target.env

    @property
    def region(self) -> str:
        return self.target.region

    def value(self, key: str) -> str:
        """The params value, else the root template's default, else ''."""
        if self.values.get(key, "") != "":
            return self.values[key]
        return str(self.target.root_parameters().get(key, {}).get("Default", ""))

    def zones(self) -> list[str]:
        return [z.strip() for z in self.value(names.AVAILABILITY_ZONES).split(",") if z.strip()]

    def root_stack_exists(self) -> bool:
        """True when the environment's root stack exists (its VPC and NAT addresses do too).
        Unknown counts as absent: a check then asks for the full new capacity (the safe side)."""
        if not self._looked_up:
            self._looked_up = True
            cfn = self.aws.client("cloudformation")
            try:
                found = call(cfn.describe_stacks, "cloudformation:DescribeStacks",
                             StackName=self.target.root_stack)
                self._root_stack = (found.get("Stacks") or [None])[0]
            except CheckUnavailable:
                self._root_stack = None
        stack = self._root_stack
        return bool(stack) and stack.get("StackStatus") not in ("DELETE_COMPLETE",
                                                                 "REVIEW_IN_PROGRESS")
