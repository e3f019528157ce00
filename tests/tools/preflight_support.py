"""Shared pieces of the preflight tests: stubbed clients (botocore's Stubber, one attempt, no
retries), a fake DNS resolver, and a Context over params/<env>.json."""

from __future__ import annotations

import datetime

import boto3
from botocore.config import Config
from botocore.stub import Stubber

from tools import params as params_file
from tools.preflight import runner
from tools.preflight.core import Aws, Context, Result, Target

REGION = "us-east-1"
ACCOUNT = "123456789012"
ZONE_ID = "Z0000000000EXAMPLE"
ZONE_NS = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk", "ns-3.awsdns-03.com",
           "ns-4.awsdns-04.net"]
CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000001"
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
NO_RETRY = Config(retries={"total_max_attempts": 1})


def stubbed_clients():
    """A generator for a fixture: get(name) -> Stubber; every stubber must be used up."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            client = boto3.client(name, region_name=REGION, aws_access_key_id="x",
                                  aws_secret_access_key="x", config=NO_RETRY)  # noqa: S106
            stubber = Stubber(client)
            stubber.activate()
            made[name] = (client, stubber)
        return made[name][1]

    get.made = made
    yield get
    for _, stubber in made.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def fake_dns(answers: dict[str, list[str]]):
    """A resolver answering from a table; a name it does not know has no NS ([])."""
    def resolve(name: str) -> list[str]:
        answer = answers.get(name, [])
        if isinstance(answer, Exception):
            raise answer
        return answer
    return resolve


PUBLIC_COM = {"com.": ["a.gtld-servers.net"]}


def context(stubs, env: str = "dev", image_tag: str | None = "abc123", resolver=None,
            **overrides: str) -> Context:
    # Every client the checks may ask for is stubbed: an unexpected call fails the test.
    for name in ("ec2", "service-quotas", "cloudformation", "acm", "route53", "ssm", "ecr",
                 "s3"):
        stubs(name)
    aws = Aws(clients={"region": REGION, **{n: c for n, (c, _) in stubs.made.items()}})
    values = {**params_file.load_env(env), **overrides}
    target = Target(env=env, params=params_file.load_env(env), region=REGION, account=ACCOUNT)
    return Context(aws=aws, target=target, values=values, image_tag=image_tag,
                   resolver=resolver or fake_dns(PUBLIC_COM))


def run(ctx: Context, title: str) -> Result:
    check = dict(runner.CHECKS)[title]
    return runner.run_check(ctx, title, check)


def title_of(function) -> str:
    return next(t for t, f in runner.CHECKS if f is function)


def text(result: Result) -> str:
    return "\n".join(result.lines())


def expect_stack(cfn: Stubber, exists: bool, name: str = "llm-api-dev") -> None:
    if exists:
        cfn.add_response("describe_stacks", {"Stacks": [{
            "StackName": name, "CreationTime": NOW, "StackStatus": "UPDATE_COMPLETE"}]},
            {"StackName": name})
    else:
        cfn.add_client_error("describe_stacks", service_error_code="ValidationError",
                             service_message=f"Stack with id {name} does not exist",
                             expected_params={"StackName": name})
