"""The runbook (docs/operations.md), the deploy page (docs/deploy.md) and the README's Deploy section
name only commands that exist.

Every `make <target>` must be a Makefile target that runs; every `python -m tools.deploy ...`
must parse with the deploy CLI; every `aws <service> <operation> --option` must exist in the
pinned AWS CLI (v1), options included.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache

import pytest

from tests.cfn import REPO
from tools.deploy.cli import build_parser

RUNBOOK = REPO / "docs" / "operations.md"
DEPLOY_PAGE = REPO / "docs" / "deploy.md"


def readme_deploy_section() -> str:
    readme = (REPO / "README.md").read_text()
    assert "\n## Deploy\n" in readme, "README has no '## Deploy' section"
    return readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]


def code_of(markdown: str) -> list[str]:
    """Shell lines from fenced blocks and inline code spans, continuation lines joined."""
    lines = []
    for block in re.findall(r"```(?:sh|bash|shell)?\n(.*?)```", markdown, re.S):
        lines += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    lines += re.findall(r"`([^`\n]+)`", prose)
    return [line.split(" # ")[0].strip() for line in lines if line.strip()]


def invocations(line: str, program: str) -> list[str]:
    """Each `program ...` in a line, up to the next |, ;, &&, ) or end of line."""
    found = []
    for match in re.finditer(rf"(?:^|[\s;(&|$]){re.escape(program)}\s", line):
        rest = line[match.end():]
        depth, end = 0, len(rest)
        for index, char in enumerate(rest):
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    end = index
                    break
                depth -= 1
            elif depth == 0 and (char in "|;" or rest.startswith("&&", index)):
                end = index
                break
        found.append(rest[:end].strip())
    return found


def words(text: str) -> list[str]:
    # Quoted arguments may hold $(...) and JMESPath; only the command words and --options count.
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


@cache
def aws_tables():
    from awscli.clidriver import create_clidriver

    driver = create_clidriver()
    return driver._get_command_table(), set(driver._get_argument_table())


def aws_problem(command: str) -> str | None:
    table, global_options = aws_tables()
    tokens = words(command)
    if not tokens or tokens[0] not in table:
        return f"no service {tokens[:1]}"
    node = table[tokens[0]]
    path = [tokens[0]]
    rest = tokens[1:]
    while rest and not rest[0].startswith("-"):
        sub = (node._get_command_table() if hasattr(node, "_get_command_table")
               else getattr(node, "subcommand_table", {}))
        if not sub:
            break
        if rest[0] not in sub:
            return f"aws {' '.join(path)} has no command {rest[0]!r}"
        node = sub[rest[0]]
        path.append(rest[0])
        rest = rest[1:]
    if len(path) < 2:
        return f"aws {path[0]}: no operation"
    options = set(getattr(node, "arg_table", {})) | global_options
    for token in rest:
        if token.startswith("--") and token[2:].split("=")[0] not in options:
            return f"aws {' '.join(path)} has no option {token}"
    return None


@cache
def make_targets() -> set[str]:
    result = subprocess.run(["make", "-pRrq", "-f", "Makefile"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    return {line.split(":", 1)[0] for line in result.stdout.splitlines()
            if re.match(r"^[a-zA-Z][\w-]*:", line) and not line.startswith(("#", "\t"))}


def make_problem(command: str) -> str | None:
    tokens = [t for t in words(command) if "=" not in t]
    missing = [t for t in tokens if t not in make_targets()]
    return f"no make target {missing}" if missing else None


def placeholder(token: str) -> bool:
    return token.startswith("<") or token.isupper()


def deploy_problem(command: str) -> str | None:
    if not words(command) or placeholder(words(command)[0]):
        return None  # a schematic such as `python -m tools.deploy STEP ENV`
    arguments = [re.sub(r"\$\w+|\$\{\w+\}", "dev", t) for t in words(command)]
    arguments = [("dev" if placeholder(t) else t) for t in arguments]
    try:
        build_parser().parse_args(arguments)
    except SystemExit:
        return f"python -m tools.deploy {command}: does not parse"
    return None


def problems_in(markdown: str) -> tuple[list[str], dict[str, int]]:
    problems, counts = [], {"aws": 0, "make": 0, "deploy": 0}
    for line in code_of(markdown):
        for command in invocations(line, "aws"):
            counts["aws"] += 1
            if problem := aws_problem(command):
                problems.append(f"{line}\n    -> {problem}")
        for command in invocations(line, "make"):
            counts["make"] += 1
            if problem := make_problem(command):
                problems.append(f"{line}\n    -> {problem}")
        for command in invocations(line, "python -m tools.deploy"):
            counts["deploy"] += 1
            if problem := deploy_problem(command):
                problems.append(f"{line}\n    -> {problem}")
    return problems, counts


def test_runbook_commands_exist():
    problems, counts = problems_in(RUNBOOK.read_text())
    assert not problems, "\n".join(problems)
    assert counts["aws"] >= 30 and counts["make"] >= 10


@pytest.mark.parametrize("section", ["Rotate the API keys without downtime", "Change the model",
                                     "Change the scale limits",
                                     "A task is stuck in PROVISIONING",
                                     "A task fails health checks", "Roll back", "Tear down"])
def test_runbook_has_each_procedure_with_commands(section):
    text = RUNBOOK.read_text()
    assert f"\n## {section}\n" in text
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    assert "```sh" in body, f"{section}: no commands"


def test_key_rotation_overlaps_old_and_new_keys_and_redeploys_twice():
    body = RUNBOOK.read_text().split("## Rotate the API keys", 1)[1].split("\n## ", 1)[0]
    assert body.index('--secret-string "$OLD,$NEW"') < body.index('--secret-string "$NEW"')
    assert body.count("--force-new-deployment") == 2


@pytest.mark.parametrize("name, text, least_make", [
    ("README.md ## Deploy", readme_deploy_section, 5),
    ("docs/deploy.md", lambda: DEPLOY_PAGE.read_text(), 6),
])
def test_deploy_docs_name_only_commands_that_exist(name, text, least_make):
    problems, counts = problems_in(text())
    assert not problems, f"{name}:\n" + "\n".join(problems)
    assert counts["make"] >= least_make


def test_deploy_page_states_what_the_rehearsal_does_not_prove():
    section = DEPLOY_PAGE.read_text()
    assert "moto" in section and "not" in section and "tests/rehearsal/moto_adapter.py" in section


def test_the_checker_catches_a_wrong_command():
    problems, _ = problems_in("```sh\naws ecs update-service --cluster c --bogus-flag\n"
                              "make no-such-target ENV=dev\npython -m tools.deploy ship dev\n```")
    assert len(problems) == 3
