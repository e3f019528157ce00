"""python -m tools.preflight ENV (make preflight ENV=<env>): read-only checks before a deploy."""

from __future__ import annotations

import argparse
import sys

from tools.preflight.core import Aws, DeployError, resolve_target
from tools.preflight.runner import run_preflight


def build_parser() -> argparse.ArgumentParser:
    from tools import params as params_file

    parser = argparse.ArgumentParser(
        prog="python -m tools.preflight",
        description="Read-only checks of the AWS account before a deploy: GPU vCPU quota, VPC "
                    "and Elastic IP quotas, the instance type in every AZ, the certificate or "
                    "hosted zone (and its public delegation), the GPU AMI parameter, the images "
                    "in ECR and the artifact bucket. Each prints ok, FAILED or could not check, "
                    "with what was found, what is needed and the fix. Exit 1 if any failed; "
                    "'could not check' warns and exits 0 unless --strict.")
    parser.add_argument("env", metavar="ENV", help="environment: params/ENV.json "
                        f"({', '.join(params_file.environments())})")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    parser.add_argument("--image-tag", help="image tag to check (default: the one `make "
                        "images` recorded in build/images/ENV.json)")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="check with this root parameter value instead (repeatable), as "
                             "deploy --parameter")
    parser.add_argument("--strict", action="store_true",
                        help="a check that could not run fails the run too")
    return parser


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r} is not KEY=VALUE",
                              "write it as --parameter Key=Value")
        values[key] = value
    return values


def main(argv: list[str] | None = None, aws: Aws | None = None, resolver=None) -> int:
    args = build_parser().parse_args(argv)
    aws = aws or Aws(region=args.region)
    try:
        overrides = parse_overrides(args.parameter)
        target = resolve_target(args.env, aws)
    except DeployError as error:
        print(f"preflight {args.env}: error: {error.message}"
              + (f" (what to do: {error.hint})" if error.hint else ""), file=sys.stderr)
        return 2
    passed = run_preflight(aws, target, values={**target.params, **overrides},
                           image_tag=args.image_tag, resolver=resolver, strict=args.strict,
                           out=lambda line: print(line, flush=True))
    return 0 if passed else 1
