"""python -m tools.deploy STEP ENV: one subcommand per step, one `make STEP ENV=<env>` each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools import params as params_file
from tools.deploy.roll import PREFERENCES
from tools.deploy.target import TEMPLATES_DIR, Aws, DeployError, resolve_target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.deploy",
        description="Deploy the LLM API to AWS, one step at a time (see docs/deploy.md and "
                    "docs/operations.md). Credentials and region come from the usual AWS "
                    "variables or profile.")
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = steps.add_parser(name, help=help_text, description=description)
        sub.add_argument("env", metavar="ENV", help="environment: params/ENV.json "
                         f"({', '.join(params_file.environments())})")
        sub.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
        return sub

    sub = step("bootstrap", "artifact bucket + registry stack (run once per environment)",
               "Create or reuse the artifact bucket for nested templates (private, SSE-S3, "
               "TLS-only, 90-day expiry, cost tags) and deploy templates/registry.json as "
               "stack <ProjectName>-<env>-registry with RepositoryPrefix <ProjectName>-<env>.")
    sub.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help=argparse.SUPPRESS)

    step("images", "build, tag (git SHA) and push both images; needs Docker",
         "Build app/Dockerfile and ollama/Dockerfile (MODEL build argument and the "
         "llm-api.model label from params/ENV.json ModelName), tag both with the git commit, "
         "log in to ECR, push, and record the tag in build/images/ENV.json for the deploy "
         "step. Refuses without a running Docker engine (`docker info`) or with uncommitted "
         "changes under app/ or ollama/.")

    for name, help_text, description in (
        ("preview", "change set with nested stacks: print every change, keep it for review",
         "Package the templates, create a change set with IncludeNestedStacks, print the "
         "changes of the root and every nested stack as one table and whether the GPU AMI or "
         "the launch template changes, and leave the change set for review (execute or "
         "delete it by hand; the commands are printed)."),
        ("deploy", "preflight, package, change set + execute, wait, verify, smoke test",
         "Run the read-only preflight checks, package templates/root.json, create a change "
         "set with nested stacks from params/ENV.json plus the deploy-time values (ImageTag, "
         "RepositoryPrefix), print it, execute it and print root and nested stack events "
         "until the stack settles; say whether the GPU AMI or the launch template changed "
         "(then `make roll` replaces the instances). At night (the scalable target's "
         "MaxCapacity 0) it says before executing whether the change set lifts that cap (it "
         "does when it updates the ScalableTarget: until the next night action) or keeps it, "
         "and afterwards which happened. Refuses if the Ollama image's model "
         "label differs from ModelName. Then waits until the ECS service is stable (printing "
         "the Auto Scaling group's scaling activity while tasks wait in PROVISIONING), "
         "verifies that the new task definition runs (a service scaled to zero is woken "
         "first with one request, as a client would; at night, while the night cap holds, "
         "or without a wake path the deploy fails: nothing verified), calls /v1/models and a "
         "tiny "
         "completion, and prints the service URL and how to read the API key. prod stacks "
         "get termination protection; all stacks get cost-allocation tags."),
    ):
        sub = step(name, help_text, description)
        sub.add_argument("--image-tag", help="image tag to deploy (default: the one `images` "
                         "recorded in build/images/ENV.json)")
        sub.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                         help="set one more root parameter for this run only (repeatable), "
                              "e.g. a hosted zone created outside this repository")
        sub.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help=argparse.SUPPRESS)
        if name == "deploy":
            sub.add_argument("--wait-timeout", type=int, metavar="SECONDS",
                             help="stability wait limit (default: instance launch + health "
                                  "check grace period + deregistration delay + margin)")
            sub.add_argument("--skip-preflight", action="store_true",
                             help="do not run the read-only account checks first (says so "
                                  "loudly)")
            sub.add_argument("--keep-night-cap", action="store_true",
                             help="at night (the scalable target's MaxCapacity 0): if the "
                                  "stack update lifts the cap, put the night action's "
                                  "capacities back after the deploy and its verification "
                                  "(the service returns to 0 tasks)")
            sub.add_argument("--rehearsal", action="store_true",
                             help="offline rehearsal against a local emulator "
                                  "(AWS_ENDPOINT_URL=http://localhost:PORT): placeholder image "
                                  "tag; no image check, stability wait or smoke test")

    step("preflight", "read-only checks of the account before a deploy (deploy runs them first)",
         "GPU vCPU quota (with the roll surge), VPC and Elastic IP quotas, the instance type in "
         "every AZ, the certificate or hosted zone (and its public delegation), the GPU AMI "
         "parameter, the images in ECR and the artifact bucket; the same as python -m "
         "tools.preflight ENV, which takes more options (--image-tag, --parameter, --strict).")

    step("roll", "replace GPU instances on an old launch template, keeping the service up",
         "Once the ECS service is stable, start an Auto Scaling instance refresh of the GPU "
         "group: instances already on the current launch template version (the group's, or "
         "its mixed instances policy's with SpotInstances=true) are skipped, the replacement "
         "is launched before an old instance goes (min healthy "
         f"{PREFERENCES['MinHealthyPercentage']} %, max {PREFERENCES['MaxHealthyPercentage']} %), "
         "scale-in protected instances are refreshed and the capacity provider's managed "
         "draining moves their task first. Prints the refresh's progress until it ends.")

    step("wake-check", "time a wake from zero tasks (ScaleToZero=true) on a real account",
         "Wait (bounded, saying for what) until the service runs 0 tasks after IdleMinutes "
         "without a request; send one request to ServiceUrl/readyz without a key (expects "
         "the listener's 401) and one with the API key (expects the load balancer's 503); poll "
         "/readyz with the key and backoff until 200, then GET /v1/models; print the time per "
         "part beside stacks/wake.py's budget (wake alarm, instance start, registration, image "
         "pull, task RUNNING, target healthy, first 200) from the CloudWatch, Application Auto "
         "Scaling, Auto Scaling and ECS timestamps. "
         "Refuses at night (MaxCapacity 0) and where ScaleToZero is off. Tested with stubbed "
         "AWS responses and a fake clock only: it has NOT run against AWS.")

    sub = step("teardown", "scale to zero, drop protections, delete the root stack",
               "Scale the ECS service to zero (autoscaling pinned to 0), remove scale-in "
               "protection from the GPU instances, turn off the ALB's deletion protection "
               "(after you confirm), delete the root stack and print its events, then list "
               "what was kept on purpose (log groups, secret, KMS key, repositories, buckets) "
               "with the command that deletes each. Refuses a stack with termination "
               "protection (prod) until you remove it yourself.")
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None, aws: Aws | None = None) -> int:
    from tools.deploy import apply, bootstrap, images, preview, roll, teardown, wakecheck

    args = build_parser().parse_args(argv)
    aws = aws or Aws(region=args.region)
    try:
        if args.step == "images":
            images.require_docker()  # before any AWS call: without an engine nothing to do
        target = resolve_target(args.env, aws, getattr(args, "templates", TEMPLATES_DIR))
        if args.step == "bootstrap":
            return bootstrap.bootstrap(aws, target)
        if args.step == "images":
            return images.images(aws, target)
        if args.step == "roll":
            return roll.roll(aws, target)
        if args.step == "preflight":
            from tools.preflight import cli as preflight

            return preflight.main([args.env, *(["--region", args.region] if args.region else [])],
                                  aws=aws)
        if args.step == "teardown":
            return teardown.teardown(aws, target, args.yes)
        if args.step == "wake-check":
            return wakecheck.wake_check(aws, target)
        overrides = apply.parse_overrides(args.parameter)
        if args.step == "preview":
            return preview.preview(aws, target, args.image_tag, overrides)
        return apply.deploy(aws, target, args.image_tag, overrides, args.rehearsal,
                            args.wait_timeout, args.skip_preflight, args.keep_night_cap)
    except DeployError as error:
        print(f"{args.step} {args.env}: error: {error.message}", file=sys.stderr, flush=True)
        if error.hint:
            print(f"  what to do: {error.hint}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{args.step} {args.env}: interrupted; AWS keeps going on its own: run the step "
              "again to resume watching", file=sys.stderr)
        return 130
