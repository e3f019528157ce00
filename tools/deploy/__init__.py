"""The deploy path, one step per module, one `make` target per step:
python -m tools.deploy STEP ENV (Makefile: make STEP ENV=<env>).

    bootstrap.py  bootstrap ENV  artifact bucket for nested templates + the registry stack
    images.py     images ENV     build both images, tag them with the git SHA, push, record
    preview.py    preview ENV    package, change set with nested stacks, print it, keep it
    apply.py      deploy ENV     preflight, package, change set, execute, events until settled
    verify.py                    (deploy) service stable, task definition check, smoke test
    roll.py       roll ENV       instance refresh onto the current launch template, serving
    (tools/preflight) preflight ENV   read-only account checks; deploy runs them first
    teardown.py   teardown ENV   scale to zero, drop protections, delete, list what was kept
    wakecheck.py  wake-check ENV time a wake from zero tasks by part (real account; not run here)
    wake.py                      (deploy, wake-check) a service at zero: its wake path, the wake
    cli.py                       the argument parser and main()

Shared: target.py (ENV -> Target, the boto3 session, AWS errors -> what to do), changeset.py
(the one change-set path of preview and deploy), events.py (the one waiting loop: stack events,
ECS events, scaling activities, refresh progress), fleet.py (AMI and launch template changes),
local.py (`aws cloudformation package`, git, docker). boto3 makes every AWS API call; the AWS
CLI only packages. Every step stops at the first failure with the AWS error and a hint.
"""
